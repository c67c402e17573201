# The Google APIs keygate's resources need. Never disabled on destroy: other workloads in the
# project may use them too.
resource "google_project_service" "this" {
  for_each = toset(var.services)

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
