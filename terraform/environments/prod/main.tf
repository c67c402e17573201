module "keygate" {
  source = "../../modules/gcp/keygate"

  project_id  = var.project_id
  environment = "prod"
  region      = var.region

  nodes_cidr             = "10.10.0.0/20"
  pods_cidr              = "10.12.0.0/16"
  services_cidr          = "10.13.0.0/20"
  master_ipv4_cidr_block = "172.16.0.0/28"

  master_authorized_networks = var.master_authorized_networks
  machine_type               = "e2-standard-4"
  min_nodes                  = 3
  max_nodes                  = 12
  deletion_protection        = true

  redis_tier              = "STANDARD_HA"
  redis_memory_size_gb    = 2
  redis_reserved_ip_range = "10.62.0.0/29"

  github_repository    = var.github_repository
  github_repository_id = var.github_repository_id
  github_subjects      = ["repo:${var.github_repository}:environment:prod"]

  promotion_source = {
    project_id = var.promotion_source_project_id
    location   = var.region
    repository = "keygate"
  }

  iap_members          = var.iap_members
  ip_allowlist_enabled = var.ip_allowlist_enabled
  ip_allowlist         = var.ip_allowlist
  blocked_ip_ranges    = var.blocked_ip_ranges

  daily_tokens_alert_threshold   = var.daily_tokens_alert_threshold
  daily_cost_alert_threshold_usd = var.daily_cost_alert_threshold_usd
  notification_channels          = var.notification_channels
}
