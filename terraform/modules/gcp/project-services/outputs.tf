output "services" {
  description = "The enabled services (depend on this output to order resources after enablement)."
  value       = [for s in google_project_service.this : s.service]
}
