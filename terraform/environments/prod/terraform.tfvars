# Non-secret settings of prod. project_id is not here: export TF_VAR_project_id (and, for stage
# and prod, TF_VAR_promotion_source_project_id) before plan/apply.
region               = "europe-west1"
github_repository    = "example-org/keygate"
github_repository_id = "123456789"

daily_tokens_alert_threshold = 50000000

# Access mode B (docs/runbook.md): set both, apply, then add the ip-allowlist component.
ip_allowlist_enabled = false
ip_allowlist         = []

# Abuse response: ranges Cloud Armor denies outright.
blocked_ip_ranges = []
