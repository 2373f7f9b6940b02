"""The central controller of coordinated container migration and base-station handover (Ngo et al. 2020, sec. III).

One long-running process on the cloud keeps a global view of the edge: hosts and their resource use, base
stations, mobile users, where each user's services run, what the users measure (E2E delay per task, RSSI
of nearby base stations) and the migrations/handovers it has ordered. That view lives in
:mod:`.store` so that a restarted controller resumes from it with nothing lost.
"""
