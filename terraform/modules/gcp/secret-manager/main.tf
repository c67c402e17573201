# Secret Manager secrets and who may read them. Terraform creates the secrets; their versions
# (the keys themselves) are added by operators with gcloud (docs/runbook.md, "Secrets"), so key
# material never passes through Terraform state. The exception is content Terraform itself
# generated (the Redis URL), whose versions the caller writes.
locals {
  # Accessor (payload) and viewer (version metadata: the gateway asks which version `latest`
  # is before it fetches a payload) for every accessor on every secret.
  roles = ["roles/secretmanager.secretAccessor", "roles/secretmanager.viewer"]

  bindings = {
    for b in setproduct(var.secret_ids, keys(var.accessors), local.roles) :
    "${b[0]}/${b[1]}/${b[2]}" => { secret = b[0], member = var.accessors[b[1]], role = b[2] }
  }
}

resource "google_secret_manager_secret" "this" {
  for_each = toset(var.secret_ids)

  project   = var.project_id
  secret_id = each.value
  labels    = var.labels

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_iam_member" "this" {
  for_each = local.bindings

  project   = var.project_id
  secret_id = google_secret_manager_secret.this[each.value.secret].secret_id
  role      = each.value.role
  member    = each.value.member
}
