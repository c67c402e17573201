output "cluster_name" {
  description = "GKE cluster name."
  value       = module.keygate.cluster_name
}

output "cluster_location" {
  description = "GKE cluster location."
  value       = module.keygate.cluster_location
}

output "load_balancer_ip" {
  description = "Point the environment's DNS name at this address."
  value       = module.keygate.load_balancer_ip
}

output "runtime_service_account" {
  description = "Workload Identity service account of the gateway."
  value       = module.keygate.runtime_service_account
}

output "registry" {
  description = "Image path prefix."
  value       = module.keygate.registry
}

output "workload_identity_provider" {
  description = "For the GitHub variable GCP_WORKLOAD_IDENTITY_PROVIDER_<ENV>."
  value       = module.keygate.workload_identity_provider
}

output "deployer_service_account" {
  description = "For the GitHub variable GCP_DEPLOYER_SA_<ENV>."
  value       = module.keygate.deployer_service_account
}
