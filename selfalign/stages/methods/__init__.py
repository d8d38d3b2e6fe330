"""Stages that only one method needs, a package per method."""
