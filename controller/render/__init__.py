"""`llmfleet render k8s | gateway`: a plan as Kubernetes manifests and Gateway API routes."""
