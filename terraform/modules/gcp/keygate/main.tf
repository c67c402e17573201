# One keygate environment on GCP: everything the manifests in k8s/overlays/<environment> expect
# to exist. The environments (terraform/environments/<env>) only choose sizes and ranges.
locals {
  namespace = "keygate-${var.environment}"

  # The three key secrets of SPEC §2 (versions added by operators) and the two Terraform writes
  # for the Redis connection (synced into the cluster by k8s/base/redis-externalsecret.yaml).
  app_secret_ids   = ["openai-api-keys", "jwt-public-keys", "hmac-secrets"]
  redis_secret_ids = ["redis-url", "redis-ca"]
}

module "services" {
  source = "../project-services"

  project_id = var.project_id
}

module "network" {
  source = "../network"

  project_id    = var.project_id
  region        = var.region
  name          = "keygate"
  nodes_cidr    = var.nodes_cidr
  pods_cidr     = var.pods_cidr
  services_cidr = var.services_cidr

  depends_on = [module.services]
}

module "gke" {
  source = "../gke"

  project_id                 = var.project_id
  name                       = "keygate"
  location                   = var.region
  network_id                 = module.network.network_id
  subnetwork_id              = module.network.subnetwork_id
  pods_range_name            = module.network.pods_range_name
  services_range_name        = module.network.services_range_name
  master_ipv4_cidr_block     = var.master_ipv4_cidr_block
  master_authorized_networks = var.master_authorized_networks
  release_channel            = var.release_channel
  machine_type               = var.machine_type
  min_nodes                  = var.min_nodes
  max_nodes                  = var.max_nodes
  deletion_protection        = var.deletion_protection
}

module "redis" {
  source = "../memorystore"

  project_id        = var.project_id
  name              = "keygate"
  region            = var.region
  tier              = var.redis_tier
  memory_size_gb    = var.redis_memory_size_gb
  network_id        = module.network.network_id
  reserved_ip_range = var.redis_reserved_ip_range
}

module "runtime_identity" {
  source = "../workload-identity"

  project_id    = var.project_id
  workload_pool = module.gke.workload_pool
  namespace     = local.namespace
}

module "secrets" {
  source = "../secret-manager"

  project_id = var.project_id
  secret_ids = concat(local.app_secret_ids, local.redis_secret_ids)
  accessors = {
    runtime = module.runtime_identity.member
  }
  labels = {
    app         = "keygate"
    environment = var.environment
  }

  depends_on = [module.services]
}

# The Redis connection as the gateway takes it: rediss://:<AUTH>@<host>:6378. It lives in the
# Terraform state anyway (the instance exposes its AUTH string), so Terraform writes it.
resource "google_secret_manager_secret_version" "redis_url" {
  secret      = module.secrets.ids["redis-url"]
  secret_data = "rediss://:${urlencode(module.redis.auth_string)}@${module.redis.host}:${module.redis.port}"
}

resource "google_secret_manager_secret_version" "redis_ca" {
  secret      = module.secrets.ids["redis-ca"]
  secret_data = module.redis.ca_certificates
}

module "github" {
  source = "../github-oidc"

  project_id           = var.project_id
  github_repository    = var.github_repository
  github_repository_id = var.github_repository_id
  github_subjects      = var.github_subjects

  depends_on = [module.services]
}

module "registry" {
  source = "../artifact-registry"

  project_id    = var.project_id
  location      = var.region
  repository_id = "keygate"
  writers = {
    deployer = module.github.deployer_member
  }
  readers = {
    nodes = "serviceAccount:${module.gke.node_service_account}"
  }

  depends_on = [module.services]
}

# Promotion copies an image from the previous environment's registry: the deployer of this
# environment may read that one repository.
resource "google_artifact_registry_repository_iam_member" "promotion_source" {
  count = var.promotion_source == null ? 0 : 1

  project    = var.promotion_source.project_id
  location   = var.promotion_source.location
  repository = var.promotion_source.repository
  role       = "roles/artifactregistry.reader"
  member     = module.github.deployer_member
}

# Access mode A: who may pass Identity-Aware Proxy (people, groups, and the service accounts of
# applications that call keygate through IAP with a Google-signed ID token).
resource "google_project_iam_member" "iap_access" {
  for_each = toset(var.iap_members)

  project = var.project_id
  role    = "roles/iap.httpsResourceAccessor"
  member  = each.value
}

module "edge" {
  source = "../edge"

  project_id = var.project_id

  depends_on = [module.services]
}

module "cloud_armor" {
  source = "../cloud-armor"

  project_id                     = var.project_id
  ip_allowlist_enabled           = var.ip_allowlist_enabled
  ip_allowlist                   = var.ip_allowlist
  blocked_ip_ranges              = var.blocked_ip_ranges
  rate_limit_requests_per_minute = var.rate_limit_requests_per_minute
  waf_body_rules_preview         = var.waf_body_rules_preview

  depends_on = [module.services]
}

module "monitoring" {
  source = "../monitoring"

  project_id                     = var.project_id
  environment                    = var.environment
  namespace                      = local.namespace
  daily_tokens_alert_threshold   = var.daily_tokens_alert_threshold
  daily_cost_alert_threshold_usd = var.daily_cost_alert_threshold_usd
  failure_rate_threshold         = var.failure_rate_threshold
  latency_p95_threshold_ms       = var.latency_p95_threshold_ms
  notification_channels          = var.notification_channels

  depends_on = [module.services]
}
