output "cluster_name" {
  description = "GKE cluster name (kubectl context, Argo CD cluster registration)."
  value       = module.gke.name
}

output "cluster_location" {
  description = "GKE cluster location."
  value       = module.gke.location
}

output "load_balancer_ip" {
  description = "Point the environment's DNS name at this address."
  value       = module.edge.address
}

output "runtime_service_account" {
  description = "Annotate the Kubernetes service account with this (k8s/overlays/<env>/patches.yaml)."
  value       = module.runtime_identity.email
}

output "registry" {
  description = "Image path prefix (k8s/overlays/<env> images newName is <registry>/gateway)."
  value       = module.registry.repository_url
}

output "workload_identity_provider" {
  description = "GitHub variable GCP_WORKLOAD_IDENTITY_PROVIDER_<ENV>."
  value       = module.github.workload_identity_provider
}

output "deployer_service_account" {
  description = "GitHub variable GCP_DEPLOYER_SA_<ENV>."
  value       = module.github.deployer_email
}

output "redis_reserved_ip_range" {
  description = "The Memorystore range (k8s NetworkPolicy)."
  value       = var.redis_reserved_ip_range
}
