"""The Hypriot Cluster Lab paper's use cases on a ClusterLab cluster: `clusterlab-demo` (cli)."""
