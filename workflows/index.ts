// The workflowsPath bundle: every workflow the control worker runs.
export { ImageBuildWorkflow } from './image-build';
export { PushWorkflow } from './push';
export { CommitStatusWorkflow } from './commit-status';
export { BuildSchedulerWorkflow } from './build-scheduler';
export { NotificationDeliveryWorkflow, ScheduledRuleBuildWorkflow } from './notify';
