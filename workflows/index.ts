// The workflowsPath bundle: every workflow the control worker runs.
export { ImageBuildWorkflow } from './image-build';
export { NotificationDeliveryWorkflow, ScheduledRuleBuildWorkflow } from './notify';
