output "repository_url" {
  description = "Docker path prefix: <location>-docker.pkg.dev/<project>/<repository>."
  value       = "${var.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.this.repository_id}"
}

output "name" {
  description = "Repository name."
  value       = google_artifact_registry_repository.this.name
}
