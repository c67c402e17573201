# The Cloud Armor policy the load balancer's backend uses (k8s/base/backendconfig.yaml names it).
#
# Evaluation order (lowest priority number first):
#   500+    deny listed abusers (blocked_ip_ranges)                        - abuse response
#   1000+   OWASP CRS preconfigured rules                                  - deny(403)
#   2000+   rate limit per client IP; in allowlist mode it matches only the allowlisted ranges
#   default allow, or deny(403) in allowlist mode (access mode B)
#
# Rule sets whose signatures match the request body run in preview by default: Cloud Armor
# matches preconfigured rules against the body too, and LLM prompts legitimately contain SQL,
# HTML, JavaScript (eval(, module.exports), Java (java.lang.Runtime, ${jndi:), shell and raw
# HTTP, so enforcing those sets would answer real prompts 403 at the edge, where keygate never
# sees (or audits) them. Preview logs what they would have blocked (jsonPayload.
# previewSecurityPolicy in the load balancer logs); enforce them per environment once reviewed.
# methodenforcement is left out: its only rule allows GET, HEAD, POST and OPTIONS, which would
# refuse DELETE /admin/blocks; keygate answers unrouted methods itself.
locals {
  waf_rules = [
    { name = "sqli-v33-stable", body = true },
    { name = "xss-v33-stable", body = true },
    { name = "lfi-v33-stable", body = true },
    { name = "rfi-v33-stable", body = true },
    { name = "rce-v33-stable", body = true },
    { name = "protocolattack-v33-stable", body = true },
    { name = "sessionfixation-v33-stable", body = true },
    { name = "java-v33-stable", body = true },
    { name = "nodejs-v33-stable", body = true },
    { name = "scannerdetection-v33-stable", body = false },
  ]

  # A basic-match rule holds at most 10 ranges.
  allowlist_chunks   = chunklist(var.ip_allowlist, 10)
  blocked_chunks     = chunklist(var.blocked_ip_ranges, 10)
  rate_limit_matches = var.ip_allowlist_enabled ? local.allowlist_chunks : [["*"]]
}

resource "google_compute_security_policy" "this" {
  project     = var.project_id
  name        = var.name
  description = "keygate edge: OWASP rules, per-IP rate limit, optional IP allowlist"
  type        = "CLOUD_ARMOR"

  lifecycle {
    precondition {
      condition     = !var.ip_allowlist_enabled || length(var.ip_allowlist) > 0
      error_message = "ip_allowlist_enabled needs at least one range in ip_allowlist, or every request is denied."
    }
  }

  # JSON bodies are parsed, so the rules look at values rather than at the whole body as one
  # string (fewer false positives on prompts).
  advanced_options_config {
    json_parsing = "STANDARD"
  }

  adaptive_protection_config {
    layer_7_ddos_defense_config {
      enable = true
    }
  }

  dynamic "rule" {
    for_each = local.blocked_chunks
    content {
      priority    = 500 + rule.key
      action      = "deny(403)"
      description = "abuse response: blocked ranges"
      match {
        versioned_expr = "SRC_IPS_V1"
        config {
          src_ip_ranges = rule.value
        }
      }
    }
  }

  dynamic "rule" {
    for_each = local.waf_rules
    content {
      priority    = 1000 + rule.key
      action      = "deny(403)"
      preview     = rule.value.body ? var.waf_body_rules_preview : false
      description = "OWASP CRS ${rule.value.name}"
      match {
        expr {
          expression = "evaluatePreconfiguredWaf('${rule.value.name}', {'sensitivity': ${var.waf_sensitivity}})"
        }
      }
    }
  }

  dynamic "rule" {
    for_each = local.rate_limit_matches
    content {
      priority    = 2000 + rule.key
      action      = "throttle"
      description = var.ip_allowlist_enabled ? "allowlisted ranges, rate limited per IP" : "rate limit per IP"
      match {
        versioned_expr = "SRC_IPS_V1"
        config {
          src_ip_ranges = rule.value
        }
      }
      rate_limit_options {
        conform_action = "allow"
        exceed_action  = "deny(429)"
        enforce_on_key = "IP"
        rate_limit_threshold {
          count        = var.rate_limit_requests_per_minute
          interval_sec = 60
        }
      }
    }
  }

  rule {
    priority    = 2147483647
    action      = var.ip_allowlist_enabled ? "deny(403)" : "allow"
    description = var.ip_allowlist_enabled ? "default: deny (allowlist mode)" : "default: allow"
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
  }
}
