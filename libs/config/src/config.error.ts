/** Thrown at boot for invalid configuration; the message names the variable or path, never a value. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}
