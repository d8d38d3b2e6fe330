"""Executors run the legs of the segment walk (walk.py): local (this process) and ray_executor."""
