output "ids" {
  description = "Secret id => full resource id (projects/.../secrets/...)."
  value       = { for k, s in google_secret_manager_secret.this : k => s.id }
}
