import { Module } from '@nestjs/common';
import { ObservabilityModule } from '@keygate/observability';
import { AuditService } from './audit.service';

/** Provides {@link AuditService}; writes through the structured logger. */
@Module({
  imports: [ObservabilityModule],
  providers: [AuditService],
  exports: [AuditService],
})
export class AuditModule {}
