"""Deployment artefacts: Kubernetes manifests (``k8s/``), the training image's Dockerfile, and the
several-replicas rehearsal behind HAProxy (``python -m deploy.replicas``)."""
