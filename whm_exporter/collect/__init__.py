"""Collection across scrapes: what a target has learned (state), which call comes next
(schedule), what each call asks WHM and keeps of the answer (calls), and the loop that runs them
under the server's bound (run)."""
