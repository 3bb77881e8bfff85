"""Who gets the lead, and what happens to it after.

    rules       warmth rules, the matching routing rule, availability (duty, vacation, working hours, caps)
                and choosing among the available: fixed, round-robin, weighted, least loaded
    assignment  routing a processed lead to its owner, writing the assignment (SLA clock, history) and
                queueing the owner's notification
    lifecycle   operators' commands on a lead (take, converted/refused, attempt, reassign) and on a
                manager (duty, vacation); RoutingError says why one cannot be done
    sla         the sweep that reassigns or escalates leads not taken in time, and the daily digest

Everything here runs inside the transaction that processes the event (or the scheduler's, or an
operator's command), so an assignment, its round-robin step, its audit entry and its notification
commit together or not at all: a retried or replayed event never advances the round-robin twice.
"""
