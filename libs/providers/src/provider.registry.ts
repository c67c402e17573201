import { Inject, Injectable } from '@nestjs/common';
import type { ProviderName } from '@keygate/secrets';
import { ProviderAdapter } from './provider-adapter.interface';

/** Looks up the adapter for a provider name; built once from the registered adapters. */
@Injectable()
export class ProviderRegistry {
  private readonly byName: ReadonlyMap<ProviderName, ProviderAdapter>;

  constructor(@Inject(ProviderAdapter) adapters: ProviderAdapter[]) {
    this.byName = new Map(adapters.map((a) => [a.name, a]));
  }

  /** The adapter for `name`, or undefined when no adapter is registered for it. */
  get(name: ProviderName): ProviderAdapter | undefined {
    return this.byName.get(name);
  }
}
