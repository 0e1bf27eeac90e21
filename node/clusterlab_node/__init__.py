"""clusterlab-node: the agent that joins a node to its ClusterLab cluster (see cli)."""
