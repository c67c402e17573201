output "host" {
  description = "Private IP of the instance."
  value       = google_redis_instance.this.host
}

output "port" {
  description = "TLS port (6378 with in-transit encryption)."
  value       = google_redis_instance.this.port
}

output "auth_string" {
  description = "The AUTH string."
  value       = google_redis_instance.this.auth_string
  sensitive   = true
}

output "ca_certificates" {
  description = "PEM bundle of the instance's server CAs (more than one during a CA rotation)."
  value       = join("\n", [for c in google_redis_instance.this.server_ca_certs : c.cert])
}
