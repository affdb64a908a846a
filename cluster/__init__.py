"""Cluster: job submission to a Ray cluster, the cluster-launcher/KubeRay configs, and the end-to-end demo."""
