output "name" {
  description = "Policy name."
  value       = google_compute_security_policy.this.name
}

output "self_link" {
  description = "Policy self link."
  value       = google_compute_security_policy.this.self_link
}
