# The gateway's Google identity: a service account with no project roles, which the
# Kubernetes service account <namespace>/<ksa> may impersonate through Workload Identity. What it
# may do is granted on the resources themselves (the secrets).
resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = var.account_id
  display_name = "keygate gateway runtime"
}

resource "google_service_account_iam_member" "workload_identity" {
  service_account_id = google_service_account.runtime.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.workload_pool}[${var.namespace}/${var.k8s_service_account}]"
}
