"""Prefect tasks over plain functions.

Importing the package sets OpenMP's passive wait policy before any module here loads torch
(models.cpu.configure_openmp): OpenMP reads it only once, when torch first loads it.
"""

from models.cpu import configure_openmp

configure_openmp()
