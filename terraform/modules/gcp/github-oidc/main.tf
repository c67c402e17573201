# Workload Identity Federation for GitHub Actions: workflows of one repository exchange their
# OIDC token for a short-lived token of the deployer service account. No key file exists.
resource "google_iam_workload_identity_pool" "github" {
  project                   = var.project_id
  workload_identity_pool_id = var.pool_id
  display_name              = "GitHub Actions"
}

resource "google_iam_workload_identity_pool_provider" "github" {
  project                            = var.project_id
  workload_identity_pool_id          = google_iam_workload_identity_pool.github.workload_identity_pool_id
  workload_identity_pool_provider_id = var.provider_id
  display_name                       = "GitHub Actions OIDC"

  attribute_mapping = {
    "google.subject"          = "assertion.sub"
    "attribute.repository"    = "assertion.repository"
    "attribute.repository_id" = "assertion.repository_id"
    "attribute.ref"           = "assertion.ref"
  }

  # Tokens of any other repository are refused outright. The numeric id is checked as well as the
  # name: a name can be freed (rename, deletion) and registered again by someone else; the id cannot.
  attribute_condition = "assertion.repository_id == \"${var.github_repository_id}\" && assertion.repository == \"${var.github_repository}\""

  oidc {
    issuer_uri = "https://token.actions.githubusercontent.com"
  }
}

resource "google_service_account" "deployer" {
  project      = var.project_id
  account_id   = var.deployer_account_id
  display_name = "keygate image delivery (GitHub Actions)"
}

# Only the listed OIDC subjects may act as the deployer, e.g. the main branch for dev
# ("repo:<org>/<repo>:ref:refs/heads/main") or a protected GitHub environment for stage/prod
# ("repo:<org>/<repo>:environment:prod").
resource "google_service_account_iam_member" "deployer" {
  for_each = toset(var.github_subjects)

  service_account_id = google_service_account.deployer.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "principal://iam.googleapis.com/${google_iam_workload_identity_pool.github.name}/subject/${each.value}"
}
