"""Test doubles for what cannot run here (the Apptainer runtime, the GPU)."""
