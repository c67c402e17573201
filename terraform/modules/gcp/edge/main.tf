# What the GKE Ingress refers to by name: the global static IP (the DNS record of the
# environment's host points at it) and the TLS policy of the HTTPS proxy.
resource "google_compute_global_address" "this" {
  project     = var.project_id
  name        = var.name
  description = "keygate load balancer (k8s Ingress annotation kubernetes.io/ingress.global-static-ip-name)"
}

resource "google_compute_ssl_policy" "this" {
  project         = var.project_id
  name            = var.name
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"
}
