# A VPC for one environment: one regional subnet with secondary ranges for GKE pods and
# services, Private Google Access, and Cloud NAT so private nodes reach the LLM providers.
resource "google_compute_network" "this" {
  project                 = var.project_id
  name                    = var.name
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"
}

resource "google_compute_subnetwork" "nodes" {
  project                  = var.project_id
  name                     = "${var.name}-nodes"
  region                   = var.region
  network                  = google_compute_network.this.id
  ip_cidr_range            = var.nodes_cidr
  private_ip_google_access = true

  secondary_ip_range {
    range_name    = "pods"
    ip_cidr_range = var.pods_cidr
  }

  secondary_ip_range {
    range_name    = "services"
    ip_cidr_range = var.services_cidr
  }

  log_config {
    aggregation_interval = "INTERVAL_5_SEC"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_router" "this" {
  project = var.project_id
  name    = "${var.name}-router"
  region  = var.region
  network = google_compute_network.this.id
}

resource "google_compute_router_nat" "this" {
  project                            = var.project_id
  name                               = "${var.name}-nat"
  region                             = var.region
  router                             = google_compute_router.this.name
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  # The default (64 ports per node, static) allows 64 connections at once from one node to one
  # provider address and port: the gateway holds one per stream in flight, for minutes, across every
  # pod on the node, so past ~64 concurrent calls to api.openai.com new connections are dropped
  # (audited as upstream connect timeouts). Dynamic allocation grows a node's share as it needs
  # (it excludes endpoint-independent mapping).
  enable_dynamic_port_allocation      = true
  enable_endpoint_independent_mapping = false
  min_ports_per_vm                    = 256
  max_ports_per_vm                    = 16384

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}
