"""Executors other than the local one (runner.execute): ray_executor runs the same stages on Ray."""
