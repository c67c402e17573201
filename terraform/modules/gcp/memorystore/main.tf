# Memorystore for Redis shared by the gateway replicas (limits, quotas, blocks, replay cache):
# AUTH on and in-transit encryption (TLS on port 6378, signed by a per-instance CA).
resource "google_redis_instance" "this" {
  project        = var.project_id
  name           = var.name
  region         = var.region
  tier           = var.tier
  memory_size_gb = var.memory_size_gb
  redis_version  = var.redis_version

  authorized_network = var.network_id
  connect_mode       = "DIRECT_PEERING"
  # A fixed /29, so the NetworkPolicy of the same environment can name it.
  reserved_ip_range = var.reserved_ip_range

  auth_enabled            = true
  transit_encryption_mode = "SERVER_AUTHENTICATION"

  # Memorystore's default (volatile-lru) would evict keys with a TTL under memory pressure: the HMAC
  # replay cache's, letting a used signature be accepted again. Full, Redis refuses writes instead:
  # HMAC requests get 503 and limits count per replica, as in an outage.
  redis_configs = {
    "maxmemory-policy" = "noeviction"
  }

  maintenance_policy {
    weekly_maintenance_window {
      day = "TUESDAY"
      start_time {
        hours   = 3
        minutes = 0
      }
    }
  }
}
