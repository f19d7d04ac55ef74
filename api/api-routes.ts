// Every route under /api/v1 in one chained router, so its type carries them all: the typed
// client's source (api/client.ts). Apart from api/app.ts so the client does not import the app
// (which mounts the console, which uses the client).
import { buildRoutes } from './routes/builds';
import { CONTEXTS_PATH, contextRoutes } from './routes/contexts';
import { deliveryRoutes } from './routes/deliveries';
import { imageBuildRoutes } from './routes/imagebuilds';
import { namespaceRoutes } from './routes/namespaces';
import { repositoryRoutes } from './routes/repositories';
import { repositoryRuleRoutes, ruleRoutes } from './routes/rules';
import { subscriptionRoutes } from './routes/subscriptions';
import type { AppDeps } from './types';
import { createRouter } from './util';

/**
 * Every route under /api/v1, one sub-app per resource mounted at its path, chained so its type
 * carries them all: the typed client's source (api/client.ts).
 */
export function apiRoutes(deps: AppDeps) {
  return createRouter()
    .route('/namespaces', namespaceRoutes(deps))
    .route('/repositories', repositoryRoutes(deps))
    .route('/builds', buildRoutes(deps))
    .route(CONTEXTS_PATH, contextRoutes(deps))
    .route('/imagebuilds', imageBuildRoutes(deps))
    .route('/repositories', repositoryRuleRoutes(deps))
    .route('/rules', ruleRoutes(deps))
    .route('/repositories', deliveryRoutes(deps))
    .route('/', subscriptionRoutes(deps));
}

export type KilnApi = ReturnType<typeof apiRoutes>;
