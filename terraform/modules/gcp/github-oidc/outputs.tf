output "workload_identity_provider" {
  description = "Full provider name for google-github-actions/auth `workload_identity_provider`."
  value       = google_iam_workload_identity_pool_provider.github.name
}

output "deployer_email" {
  description = "The deployer service account (google-github-actions/auth `service_account`)."
  value       = google_service_account.deployer.email
}

output "deployer_member" {
  description = "The deployer as an IAM member."
  value       = "serviceAccount:${google_service_account.deployer.email}"
}
