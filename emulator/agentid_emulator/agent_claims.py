"""The agent claims real Entra tokens carry, one set per kind of token.

``xms_act_fct`` (actor facets), ``xms_sub_fct`` (subject facets) and
``xms_idrel`` (identity relationship) are opaque space-separated numbers to a
client; resource servers use them to tell agent tokens from ordinary ones
(facet 11 marks an agent identity, 13 an agent user). ``xms_par_app_azp``
names the parent blueprint of the agent identity that is the authorized party.

The values are copied from public recordings of real tokens:

- "AgenticTokens from Console" (a published recording of Token1 = T1,
  Token 2 = T2 and the final agent user token for Microsoft Graph):
  :data:`T1`, :data:`T2`, :data:`AGENT_USER`.
- joetanx/mslab ``entra/agent-id/auth-flows.md`` (a tenant walk-through with
  every token decoded): :data:`BLUEPRINT_APP` (2.1.1, the blueprint's own
  Graph token), :data:`AUTONOMOUS_APP` (3.1.1), :data:`OBO` (5.2.4).

The two recordings come from different tenants, whose tenant facet differs
(``1`` in one, ``3`` in the other); the emulator keeps each token's values as
recorded rather than inventing a mix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AgentFacets:
    act: str
    sub: str
    idrel: str
    # Whether the token names the agent's blueprint in xms_par_app_azp.
    names_parent: bool

    def claims(self, blueprint_app_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "xms_act_fct": self.act,
            "xms_sub_fct": self.sub,
            "xms_idrel": self.idrel,
        }
        if self.names_parent:
            out["xms_par_app_azp"] = blueprint_app_id
        return out


BLUEPRINT_APP = AgentFacets("9 3", "9 3", "8 7", names_parent=False)
T1 = AgentFacets("9 1", "1 9", "14 7", names_parent=False)
T2 = AgentFacets("1 9 11", "11 1 9", "7 12", names_parent=True)
AUTONOMOUS_APP = AgentFacets("3 11 9", "11 3 9", "28 7", names_parent=True)
AGENT_USER = AgentFacets("1 9 11", "1 13", "12 1", names_parent=True)
OBO = AgentFacets("3 9 11", "3 10", "18 1", names_parent=True)
