"""ClusterLab: build SD-card images that turn Raspberry Pis into a Docker cluster."""
