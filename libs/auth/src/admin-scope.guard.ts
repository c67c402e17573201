import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { GatewayError } from '@keygate/errors';
import { ADMIN_SCOPE, type Principal } from './principal';

/** Admin routes: runs after {@link CredentialGuard}; the credential must carry `keygate.admin`. */
@Injectable()
export class AdminScopeGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const principal = context.switchToHttp().getRequest<{ user?: Principal }>().user;
    if (!principal?.scopes.includes(ADMIN_SCOPE)) throw new GatewayError('forbidden', `this route needs the ${ADMIN_SCOPE} scope`);
    return true;
  }
}
