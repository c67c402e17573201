variable "project_id" {
  type        = string
  description = "The project that holds the secrets."
}

variable "secret_ids" {
  type        = list(string)
  description = "Secret ids to create."
}

variable "accessors" {
  type        = map(string)
  description = "IAM members that may read every secret, by a static key (e.g. { runtime = \"serviceAccount:...\" })."
}

variable "labels" {
  type        = map(string)
  description = "Labels on every secret."
  default     = {}
}
