"""From a plan to Kubernetes state: desired manifests (pure), their diff against the cluster (pure), and
a reconciler that applies them in a safe order through a ClusterBackend (Kubernetes or simulated)."""
