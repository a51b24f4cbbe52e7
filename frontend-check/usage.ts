// What a console does with the generated types; tsc checks it against the schema's
// shapes, so a renamed field or a field that became nullable fails here, not in the app.
import type {
  AllocateFundsMutation,
  AllocateFundsMutationVariables,
  EnterpriseTreeQuery,
  MemberFinanceQuery,
  NotificationsSubscription,
  SetQuotaAlertsMutation,
  SharingOverviewQuery,
  TransferBookQuery,
  TransferBookQueryVariables,
} from "./generated/operations";

export interface TreeRow {
  id: string;
  name: string;
  linkStatus: string | null;
  sites: string[];
  primaryBillTo: string | undefined;
}

export function treeRows(data: EnterpriseTreeQuery): TreeRow[] {
  return (data.viewer.account?.members.edges ?? []).map(({ node }) => ({
    id: node.id,
    name: node.name,
    linkStatus: node.link?.status ?? null,
    sites: node.sites.map((site) => `${site.name} → ${site.billTo.name}`),
    primaryBillTo: node.billTos.find((billTo) => billTo.isPrimary)?.name,
  }));
}

export function availableQuota(data: MemberFinanceQuery): string | null {
  return data.account?.finance?.availableQuota ?? null; // Decimal: a string, exact
}

export function nextTransferPage(
  data: TransferBookQuery,
  current: TransferBookQueryVariables,
): TransferBookQueryVariables | null {
  const page = data.account?.transfers.pageInfo;
  return page?.hasNextPage ? { ...current, after: page.endCursor } : null;
}

export function sharedWith(data: SharingOverviewQuery): Map<string, string[]> {
  return new Map(
    (data.sharing?.byAccount ?? []).map(({ account, resources }) => [
      account.name,
      resources.map(({ resource, reason }) => `${resource.name} (${reason})`),
    ]),
  );
}

export function allocation(masterId: string, memberId: string, amount: string,
                           key: string): AllocateFundsMutationVariables {
  return { input: { masterId, memberId, amount, method: "CASH", idempotencyKey: key } };
}

export function allocationErrors(data: AllocateFundsMutation): string[] {
  return data.allocateFunds.userErrors.map(
    (error) => `${error.code}: ${error.message} (${(error.field ?? []).join(".")})`,
  );
}

export function alertThresholds(data: SetQuotaAlertsMutation): Record<string, string | null> {
  return Object.fromEntries(
    data.setQuotaAlerts.accounts.map((account) => [
      account.name,
      account.quotaAlert?.threshold ?? null,
    ]),
  );
}

export function toast(event: NotificationsSubscription): string {
  const { account, kind, availableQuota, deliveries } = event.notifications;
  const failed = deliveries.filter((delivery) => delivery.status === "FAILED").length;
  return `${account.name}: ${kind} (quota ${availableQuota}), ${failed} failed deliveries`;
}

// The schema's own types compile too (every type, not only those the examples use).
export type { Account, Mutation, Query } from "./generated/schema";

// The same operations as typed documents (client-preset): what Apollo Client's useQuery,
// urql and graphql-request take. A client infers the result and the variables from the
// document, so a wrong variable or a field read that is not selected fails tsc.
import type { ResultOf, TypedDocumentNode, VariablesOf } from "@graphql-typed-document-node/core";
import {
  EnterpriseTreeDocument,
  MemberFinanceDocument,
  RecordChargeDocument,
} from "./generated/client/graphql";

type Client = <Result, Variables>(
  document: TypedDocumentNode<Result, Variables>,
  variables: NoInfer<Variables>, // from the document, never from the call
) => Promise<Result>;

export async function memberNames(request: Client): Promise<string[]> {
  const data = await request(EnterpriseTreeDocument, {});
  return (data.viewer.account?.members.edges ?? []).map(({ node }) => node.name);
}

export async function quotaOf(request: Client, memberId: string): Promise<string | null> {
  const data = await request(MemberFinanceDocument, { memberId, charges: 5 });
  return data.account?.finance?.availableQuota ?? null;
}

export function charge(
  accountId: string,
  amount: string,
): VariablesOf<typeof RecordChargeDocument> {
  const tags = [{ key: "team", value: "web" }];
  return { input: { accountId, amount, description: "usage", product: "ECS", tags } };
}

export function chargeErrors(data: ResultOf<typeof RecordChargeDocument>): string[] {
  return data.recordCharge.userErrors.map((error) => error.code);
}
