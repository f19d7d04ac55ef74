// Shared by the API (client side) and the workflow sandbox, so it must stay free of Node imports.
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const KilnRepository = defineSearchAttributeKey('KilnRepository', SearchAttributeType.KEYWORD);
export const KilnRef = defineSearchAttributeKey('KilnRef', SearchAttributeType.KEYWORD);
export const KilnCommit = defineSearchAttributeKey('KilnCommit', SearchAttributeType.KEYWORD);
export const KilnTrigger = defineSearchAttributeKey('KilnTrigger', SearchAttributeType.KEYWORD);
export const KilnStatus = defineSearchAttributeKey('KilnStatus', SearchAttributeType.KEYWORD);

/** Every custom attribute, for registering them with the Temporal server. */
export const KILN_SEARCH_ATTRIBUTES = [KilnRepository, KilnRef, KilnCommit, KilnTrigger, KilnStatus] as const;
