output "name" {
  description = "Cluster name."
  value       = google_container_cluster.this.name
}

output "location" {
  description = "Cluster location (region)."
  value       = google_container_cluster.this.location
}

output "workload_pool" {
  description = "The Workload Identity pool of the cluster (<project>.svc.id.goog)."
  value       = google_container_cluster.this.workload_identity_config[0].workload_pool
}

output "node_service_account" {
  description = "Email of the nodes' service account (pulls images)."
  value       = google_service_account.nodes.email
}
