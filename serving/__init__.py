"""TF-free serving adapters: settings, the model runtime (load, hot swap, batching), HTTP and OIP front ends."""
