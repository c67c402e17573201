import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { GatewayError } from '@keygate/errors';
import { ADMIN_SCOPE, adminReach, PRODUCT_ADMIN_SCOPE_PREFIX, type Principal } from './principal';

/**
 * Admin routes: runs after {@link CredentialGuard}; the credential must carry `keygate.admin`, or
 * `keygate.admin:<product>` for some product (each route then keeps it to those products).
 */
@Injectable()
export class AdminScopeGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const reach = adminReach(context.switchToHttp().getRequest<{ user?: Principal }>().user);
    if (!reach.all && reach.products.size === 0)
      throw new GatewayError('forbidden', `this route needs the ${ADMIN_SCOPE} scope, or ${PRODUCT_ADMIN_SCOPE_PREFIX}<product>`);
    return true;
  }
}
