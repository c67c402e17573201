variable "project_id" {
  type        = string
  description = "The project that owns the repository."
}

variable "location" {
  type        = string
  description = "Repository location (region)."
}

variable "repository_id" {
  type        = string
  description = "Repository id (the path segment after the project in image names)."
}

variable "writers" {
  type        = map(string)
  description = "IAM members that may push, by a static key."
  default     = {}
}

variable "readers" {
  type        = map(string)
  description = "IAM members that may pull, by a static key."
  default     = {}
}

variable "keep_count" {
  type        = number
  description = "How many recent versions are always kept."
  default     = 50
}
