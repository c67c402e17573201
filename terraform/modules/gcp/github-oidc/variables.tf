variable "project_id" {
  type        = string
  description = "The project of the pool and the deployer service account."
}

variable "github_repository" {
  type        = string
  description = "The repository allowed to federate, as <owner>/<name>."

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must be <owner>/<name>."
  }
}

variable "github_repository_id" {
  type        = string
  description = "The repository's numeric id (`gh api repos/<owner>/<name> --jq .id`): unlike the name, it is never reused."

  validation {
    condition     = can(regex("^[0-9]+$", var.github_repository_id))
    error_message = "github_repository_id must be the repository's numeric id."
  }
}

variable "github_subjects" {
  type        = list(string)
  description = "OIDC `sub` claims that may impersonate the deployer (branch or environment of that repository)."
}

variable "pool_id" {
  type        = string
  description = "Workload identity pool id."
  default     = "github"
}

variable "provider_id" {
  type        = string
  description = "Workload identity pool provider id."
  default     = "github-actions"
}

variable "deployer_account_id" {
  type        = string
  description = "Service account id of the deployer."
  default     = "keygate-deployer"
}
