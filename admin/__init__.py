"""The admin runner: a separate process for data upload, retraining jobs, evaluation, promote and rollback.

It shares only the registry with the inference service; training and export run in job subprocesses.
"""
