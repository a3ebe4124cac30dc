import { PitrError } from '../errors';
import type { Command } from './command';
import { bashCompletion } from './completion/bash-completion';
import { SHELLS, completionModel, type Shell } from './completion/completion-model';
import { zshCompletion } from './completion/zsh-completion';

/** `pitr completion SHELL`; the command list is passed in, as it includes this command. */
export function completionCommand(commands: () => readonly Command[]): Command {
  return {
    name: 'completion',
    summary: 'print a shell completion script (bash or zsh) for the commands and their flags',
    usage: 'pitr completion bash|zsh',
    examples: [
      'source <(pitr completion bash)',
      'pitr completion bash > ~/.local/share/bash-completion/completions/pitr',
      'pitr completion zsh > "${fpath[1]}/_pitr"',
    ],
    async run({ options, out }) {
      const shell = options.positionals[0];
      if (!SHELLS.includes(shell as Shell) || options.positionals.length !== 1)
        throw new PitrError('Usage', `completion: expected one shell, ${SHELLS.join(' or ')}`, 'e.g. source <(pitr completion bash)');
      const model = completionModel(commands());
      out.write(shell === 'zsh' ? zshCompletion(model) : bashCompletion(model));
      return 0;
    },
  };
}
