output "address" {
  description = "The load balancer's IPv4 address: point the environment's DNS name at it."
  value       = google_compute_global_address.this.address
}

output "ssl_policy" {
  description = "TLS policy name."
  value       = google_compute_ssl_policy.this.name
}
