output "email" {
  description = "The runtime service account's email."
  value       = google_service_account.runtime.email
}

output "member" {
  description = "The runtime service account as an IAM member."
  value       = "serviceAccount:${google_service_account.runtime.email}"
}
