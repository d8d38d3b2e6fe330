"""BibTeX of the method each shipped pipeline implements (the dataset card's Citation section)."""

CITATIONS = {
    "almost": """@inproceedings{kim2023aligning,
  title = {Aligning Large Language Models through Synthetic Feedback},
  author = {Kim, Sungdong and Bae, Sanghwan and Shin, Jamin and Kang, Soyoung and Kwak, Donghyun
            and Yoo, Kang Min and Seo, Minjoon},
  booktitle = {Proceedings of the 2023 Conference on Empirical Methods in Natural Language Processing},
  year = {2023}
}""",
    "aligners": """@article{ngweta2024aligners,
  title = {Aligners: Decoupling LLMs and Alignment},
  author = {Ngweta, Lilian and Agarwal, Mayank and Maity, Subha and Gittens, Alex and Sun, Yuekai
            and Yurochkin, Mikhail},
  journal = {arXiv preprint arXiv:2403.04224},
  year = {2024}
}""",
    "backtranslation": """@article{li2023selfalignment,
  title = {Self-Alignment with Instruction Backtranslation},
  author = {Li, Xian and Yu, Ping and Zhou, Chunting and Schick, Timo and Levy, Omer
            and Zettlemoyer, Luke and Weston, Jason and Lewis, Mike},
  journal = {arXiv preprint arXiv:2308.06259},
  year = {2023}
}""",
    "realign": """@article{fan2024reformatted,
  title = {Reformatted Alignment},
  author = {Fan, Run-Ze and Li, Xuefeng and Zou, Haoyang and Li, Junlong and He, Shwai
            and Chern, Ethan and Hu, Jiewen and Liu, Pengfei},
  journal = {arXiv preprint arXiv:2402.12219},
  year = {2024}
}""",
    "wizardlm_aaa": """@misc{navigator_self_align,
  title = {Navigator Self-Align: a WizardLM-2-style AI Align AI loop},
  author = {{Gretel}},
  howpublished = {gretelai/navigator-self-align on GitHub},
  note = {after WizardLM-2's ``AI Align AI'' (AAA)}
}""",
}
