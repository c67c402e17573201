import { Injectable, type BeforeApplicationShutdown } from '@nestjs/common';

/** Whether the process is draining; readiness flips the moment shutdown starts. */
@Injectable()
export class LifecycleState implements BeforeApplicationShutdown {
  private draining = false;

  get shuttingDown(): boolean {
    return this.draining;
  }

  /** Marks the process as draining (idempotent). */
  startDrain(): void {
    this.draining = true;
  }

  beforeApplicationShutdown(): void {
    this.draining = true;
  }
}
