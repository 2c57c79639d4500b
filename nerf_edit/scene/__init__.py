"""The parts of a 3D edit run that need no nerfstudio (the plug-in `nerf_edit_methods` wires them into a pipeline):
  views     EditableViews: the training views in memory, each replaceable by its edit, with relevance targets
  schedule  EditSchedule: when to edit, which views, how strongly
  settings  EditSettings: what the viewer may change, handed over at a step boundary
  targets   RelevanceTargets: every view's relevance for the current instruction
  update    DatasetUpdate: render, edit where relevant, put back (prepare / run / apply)
  chain     EditChain: the run's place in its edit chain (start, resume, new edit on top)
  store, history, worker: the run's edits on disk, its chain's record, the overlapped-edit thread
"""
